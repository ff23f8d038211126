"""The graph model a graph-builder plugin produces (:mod:`.model`), its validation rules
(:mod:`.lint`, :mod:`.lint_structure`) and its renderings (:mod:`.render`)."""
