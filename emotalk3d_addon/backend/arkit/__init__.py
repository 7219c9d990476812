"""ARKit-52 blendshape weights: the names and their matching (``names``), a subject's ARKit
shapes (``basis``), the per-frame solve (``solve``) and Live Link Face CSV (``live_link``)."""
