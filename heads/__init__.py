"""reelfeat heads: small models trained on cached feature stores, never on videos or backbones."""
