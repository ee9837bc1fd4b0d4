"""ctxroute: per-question routing between retrieval, long context and map-reduce, with verified citations."""
__version__ = "0.1.0"
