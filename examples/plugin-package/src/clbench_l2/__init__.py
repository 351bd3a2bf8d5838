"""An installable clbench plugin: the ``l2`` method, registered through an entry point."""
