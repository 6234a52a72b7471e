"""Input assets: URLs, data: URIs and uploaded assets named in a workflow, fetched through the
address guard, typed from their content and cached by content."""
