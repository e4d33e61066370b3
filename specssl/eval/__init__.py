"""Evaluation protocols on frozen backbones."""
