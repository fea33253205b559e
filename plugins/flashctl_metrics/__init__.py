"""flashctl built-in plugin: metrics."""
