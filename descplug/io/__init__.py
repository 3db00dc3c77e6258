"""File formats: hloc-compatible HDF5 features and matches (h5)."""
