"""A trained network put to use: classify image files, export for serving."""
