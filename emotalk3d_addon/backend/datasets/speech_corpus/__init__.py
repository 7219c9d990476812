"""A speech corpus for S2GNet: many synthetic voices with their own phone timings,
phone-timed rig motion and meshes, apart from the multi-view images (no renders)."""
