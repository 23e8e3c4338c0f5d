"""Operating the cluster: the `bo` ops commands and the reconciliation control."""
