"""Geometry -> Appearance: the frame renderer (``frame``), compositor layers (``layers``),
named views (``views``) and frame files (``files``). The rasteriser is ``backend.raster``."""
