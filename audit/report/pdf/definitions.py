"""The appendix: each metric's definition and where it comes from (short citations, then the
full references)."""

from __future__ import annotations

REFERENCES: tuple[tuple[str, str], ...] = (
    ("Pfau et al. 2019", "Pfau, Young, Wei & Keiser (2019). Global Saliency: Aggregating Saliency Maps to Assess Dataset Artefact Bias."),
    ("Adebayo et al. 2018", "Adebayo, Gilmer, Muelly, Goodfellow, Hardt & Kim (2018). Sanity Checks for Saliency Maps. NeurIPS."),
    ("Cohen et al. 2021", "Cohen, Brooks, En, Zucker, Pareek, Lungren & Chaudhari (2021). Gifsplanation via Latent Shift: A Simple Autoencoder Approach to Counterfactual Generation for Chest X-rays. MIDL."),
    ("Viviano et al. 2019", "Viviano, Simpson, Dutil, Bengio & Cohen (2019). Underwhelming Generalization Improvements From Controlling Feature Attribution. arXiv."),
    ("Aggarwal et al. 2020", "Aggarwal, Arun, Gupta, Vaswani, Chen, Li, Chang, Patel, Hoebel, Gidwani, Kalpathy-Cramer & Singh (2020). Towards Trainable Saliency Maps in Medical Imaging."),
    ("Zhang et al. 2018", "Zhang, Bargal, Lin, Brandt, Shen & Sclaroff (2018). Top-Down Neural Attention by Excitation Backprop. IJCV."),
    ("Arras et al. 2022", "Arras, Osman & Samek (2022). CLEVR-XAI: A benchmark dataset for the ground truth evaluation of neural network explanations. Information Fusion."),
    ("Durand et al. 2017", "Durand, Mordan, Thome & Cord (2017). WILDCAT: Weakly Supervised Learning of Deep ConvNets for Image Classification, Pointwise Localization and Segmentation. CVPR."),
)
PFAU, ADEBAYO, COHEN, VIVIANO, AGGARWAL, ZHANG, ARRAS, DURAND = (short for short, _ in REFERENCES)

# (metric, results.json key, definition, source)
METRICS: tuple[tuple[str, str, str, str], ...] = (
    (
        "Artefact enrichment",
        "methods.M.artefact.enrichment",
        "Per image E(X) = (Σ_A |g| / Σ |g|) / (|A| / HW): the share of absolute saliency on the artefact A over the "
        "artefact's share of the H×W image. 1 = chance; undefined without an artefact or for an all-zero map. Overall: "
        "the mean over images with a 95% t-interval; pooled: mean saliency share over mean area share.",
        "this tool (the release-gate number); not from a paper",
    ),
    (
        "Global (mean) saliency on the artefact",
        "methods.M.artefact.mean_saliency",
        "m(X) = (1/|A|) Σ_{(i,j)∈A} g_ij, with g the map for the explained class (--target), z-scored per method with the mean and "
        "standard deviation over all pixels of all images; per class by true label and by prediction, 95% t-intervals, "
        "and the inter-class variance of the class means.",
        f"{PFAU}, Sec. 3, Eq. 2, Fig. 1",
    ),
    (
        "Peak saliency share",
        "methods.M.artefact.peak_share",
        "n(X) = |P_98(g) ∩ A| / |P_98(g)|, P_98 the top ⌈2% · HW⌉ pixels of the map (the 98th percentile); pixels "
        "tied at the threshold share the remaining budget by expected value.",
        f"{PFAU}, Eq. 3, App. C",
    ),
    (
        "AURRAC",
        "methods.M.aurrac",
        "Sort the labelled images with an artefact by m(X), least first; acc(k) is the accuracy on the k least "
        "artefact-salient; AURRAC = (1/N) Σ_k acc(k), the area under accuracy against response rate r = k/N (ties "
        "averaged). Above plain accuracy: the map predicts failure. Kendall's τ-b between r and acc at the deciles "
        "r = 0.1, …, 1.0 (Pfau's percentile points), with its p-value, descriptive.",
        f"{PFAU}, App. B, Fig. 2",
    ),
    (
        "Performance with and without the artefact",
        "performance.by_artefact",
        "Accuracy and AUROC (scikit-learn roc_auc_score; one-vs-rest macro mean for more than two classes) on the "
        "labelled images with a non-empty artefact mask and on all others.",
        f"{PFAU}, App. A.2, Table 2",
    ),
    (
        "Ablation",
        "ablation.artefact, ablation.region",
        "The artefact pixels (or every pixel outside the region) are replaced by the image's per-channel mean; "
        "'unchanged' is the share of images whose predicted class stays the same, 'delta' the mean change of the "
        "explained class's probability (--target; the predicted class by default); 'unchanged' with a 95% "
        "Clopper–Pearson interval, 'delta' with a 95% t-interval.",
        f"{PFAU}, App. A.1",
    ),
    (
        "Saliency versus ablation",
        "methods.M.saliency_vs_ablation",
        "Spearman ρ between the per-image enrichment E(X) and the probability drop p_t(X) − p_t(X without the "
        "artefact), with scipy's two-sided p-value.",
        f"this tool; motivated by {PFAU}, App. A.1, and {COHEN}, Sec. 1",
    ),
    (
        "IoU, IoP, IoT",
        "methods.M.region.iou / iop / iot",
        "The top-p pixels of |g| with p = |L| (pixels tied at the threshold share the remaining budget by expected "
        "value, so |S| = |L|) form S; IoU = |S∩L|/|S∪L|, IoP = |S∩L|/|L|, "
        "IoT = |S∩L|/|S|, against the region mask L; images with no or an empty region mask are excluded and counted.",
        f"{VIVIANO}; {COHEN}, Sec. 3.4",
    ),
    (
        "Localisation utility",
        "methods.M.region.auprc",
        "Per image, the average precision of |g| as a score for the region's pixels (scikit-learn's definition).",
        f"{AGGARWAL}, App. B",
    ),
    (
        "Pointing game",
        "methods.M.region.pointing_game",
        "A hit when the map's maximum lies in the region; with tied maxima, the share of them inside it.",
        ZHANG,
    ),
    (
        "Pointwise detection",
        "methods.M.region.pointwise_detection",
        "Per image one detection: the maximum of |g| (the first in row-major order; a constant map is a miss), scored "
        "by the explained class's probability, a true positive when it lies in the region (a box). mAP: average "
        "precision of the detections ranked by score over the dataset, recall over the images with a non-empty "
        "region; images without one are negatives.",
        f"{DURAND}; {AGGARWAL}, App. B",
    ),
    (
        "Relevance mass and rank accuracy",
        "methods.M.region.relevance_mass / rank_accuracy",
        "Mass: Σ_L max(g, 0) / Σ max(g, 0). Rank accuracy: the share of the top-|L| pixels inside L (ties pro rata).",
        ARRAS,
    ),
    (
        "Randomisation sanity check",
        "methods.M.randomization",
        "Parameterised layers in forward execution order are re-initialised (cascading: from the output, one more at "
        "a time; independent: one at a time) under a fixed seed per layer; per step, the mean over images of the "
        "Spearman correlation between the absolute original and randomised maps, with a 95% t-interval and the "
        "standard deviation. The unrandomised correlation is never averaged in.",
        f"{ADEBAYO}; {COHEN}, Sec. 4.5, Fig. 5, App. H",
    ),
    (
        "Sanity verdict",
        "methods.M.sanity",
        "'passed' when the 95% CI of the last cascading step (every layer re-initialised) lies below 0.5, 'failed' "
        "otherwise, 'not run' (with the reason) when the check was skipped or gave no interval. A failed method's "
        "numbers are reported but not counted in the finding.",
        f"this tool's threshold, measured on the sample models; test from {ADEBAYO}",
    ),
    (
        "Confidence intervals",
        "ci95",
        "Means of continuous per-image values: Student t-interval, mean ± t_{0.975, n−1} · s/√n. Proportions "
        "(accuracy, unchanged predictions, pointing game): Clopper–Pearson interval from beta quantiles.",
        "this tool (the papers show 95% CI error bars without saying how)",
    ),
)
