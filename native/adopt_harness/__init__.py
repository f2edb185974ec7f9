"""adopt's verification harness: runs original and rewritten model code side by side."""
