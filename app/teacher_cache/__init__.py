"""Fine-tuned teachers kept for a tenant's later jobs (issue #17): written by workers,
counted in the tenant's storage quota, deleted with the model or dataset they came from."""
