"""flashctl built-in plugin: animatediff."""
