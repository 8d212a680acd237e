"""Pure-torch numerical core: MIND-SSC features, losses, warping and ConvexAdam registration."""
