"""docrag's bottom layer: files -> pages -> store. Imports nothing from `app`, `moca_train` or `ui`."""
