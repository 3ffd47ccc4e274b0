"""docrag's composition layer: configuration, the DocRag service and the `docrag` CLI."""
