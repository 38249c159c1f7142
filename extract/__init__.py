"""reelfeat extraction: manifest, decoding (FFmpeg, in process), frozen backbones, HDF5 feature stores."""
