"""flowkernel plugin: ``flow report RUN`` writes one self-contained HTML file about a run."""
