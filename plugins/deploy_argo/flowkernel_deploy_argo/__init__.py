"""flowkernel-deploy-argo: the ``argo-workflows`` deployer (see docs/deploying.md)."""
