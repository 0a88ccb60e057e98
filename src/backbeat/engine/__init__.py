"""The engine layer: the loop that claims due work from the store, decides fire times, invokes
jobs under leases, renews them and completes runs; and the run context a job reads."""
