"""Implementation modules of adopt_kernels; import the public API from the package itself."""
