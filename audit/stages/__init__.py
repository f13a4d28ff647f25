"""Pipeline stages that run the model beyond the saliency maps (ablation, randomisation) and
emit per-image columns or records for the metrics to accumulate."""
