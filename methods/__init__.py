"""Built-in methods, one file each, registered through the ``clbench.methods`` entry points."""
