"""Files in and out: audio decoding (``audio``) and the TRACK.npz vertex track (``track``)."""
