"""flashctl built-in plugin: augment."""
