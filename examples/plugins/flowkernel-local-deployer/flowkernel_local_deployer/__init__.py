"""flowkernel-local-deployer: the tutorial deployer of docs/writing-a-deployer.md."""
