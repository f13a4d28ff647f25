# Two commands set everything up on a fresh machine: `make demo` and `make test`.
VENV    ?= .venv
PYTHON  ?= python3
EXTRA   ?= cpu
PY      := $(VENV)/bin/python
PIP     := $(PY) -m pip
STAMP   := $(VENV)/.installed-$(EXTRA)
PLUGINS := plugins/audit-dicom plugins/audit-rise plugins/audit-losses-example
DEMO    ?= demo-out
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt

.PHONY: install demo test bench clean

install: $(STAMP)

# torch first, pinned to the CPU build on these machines; constraints.txt stops any
# later requirement from replacing it with a CUDA build.
$(STAMP): pyproject.toml constraints.txt $(wildcard plugins/*/pyproject.toml)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e ".[$(EXTRA),dev,ray]" $(foreach p,$(PLUGINS),-e $(p))
	rm -f $(VENV)/.installed-*
	touch $@

demo: install
	rm -rf $(DEMO)
	$(VENV)/bin/audit make-synthetic $(DEMO)/data --seed 0
	$(VENV)/bin/audit run sample_models/biased.onnx --data $(DEMO)/data/valid/images \
		--masks $(DEMO)/data/valid/artefacts --regions $(DEMO)/data/valid/regions \
		--method gradient --method grad-cam --method occlusion --out $(DEMO)/biased
	$(VENV)/bin/audit run sample_models/unbiased.pt --input-size 28 28 --channels 1 \
		--data $(DEMO)/data/valid/images --masks $(DEMO)/data/valid/artefacts --regions $(DEMO)/data/valid/regions \
		--method gradient --method grad-cam --method occlusion --out $(DEMO)/unbiased
	$(VENV)/bin/audit compare $(DEMO)/unbiased $(DEMO)/biased
	@echo "reports: $(DEMO)/biased/report.pdf $(DEMO)/unbiased/report.pdf"

test: install
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 -q

bench: install
	$(PY) tests/bench/run.py
	$(PY) tests/bench/counterfactual_bench.py
	$(PY) tests/bench/finetune_bench.py
	$(PY) tests/bench/wildcat_bench.py
	$(PY) tests/bench/architectures_bench.py
	$(PY) tests/bench/randomisation_bench.py
	$(PY) tests/bench/scale_bench.py

clean:
	rm -rf $(VENV) $(DEMO) bench-out
