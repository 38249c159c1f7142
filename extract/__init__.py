"""reelfeat extraction: manifest, ffmpeg decoding, frozen backbones and HDF5 feature stores."""
