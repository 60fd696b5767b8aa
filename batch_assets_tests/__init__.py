"""Tests of batch_assets: transforms, storage, assets, checks and the command line."""
