"""Seeded data generators, training and metric evaluation for attnscope's built-in demo models.

Plain modules (not installed): importable from the repo root, which tests and scripts put on sys.path.
"""
