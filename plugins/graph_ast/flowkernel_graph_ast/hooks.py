"""Entry point of the graph_ast plugin (placeholder: being written)."""
