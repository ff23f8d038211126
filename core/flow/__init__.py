"""The flow model: what a user writes (FlowSpec, step and its decorators, Parameter, Config,
``current``) and how a flow file is loaded. Depends only on the top-level basics (errors)."""
