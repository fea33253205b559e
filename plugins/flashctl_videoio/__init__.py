"""flashctl built-in plugin: videoio."""
