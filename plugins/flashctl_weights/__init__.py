"""flashctl built-in plugin: weights."""
