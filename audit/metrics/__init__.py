"""Streaming saliency metrics: global saliency, enrichment, AURRAC, region localisation."""

from audit.metrics.aurrac import Aurrac
from audit.metrics.base import MapBatch, Metric
from audit.metrics.enrichment import ArtefactEnrichment
from audit.metrics.global_saliency import GlobalSaliency, levene_between_models
from audit.metrics.localisation import RegionLocalisation

__all__ = ["ArtefactEnrichment", "Aurrac", "GlobalSaliency", "MapBatch", "Metric",
           "RegionLocalisation", "levene_between_models"]
