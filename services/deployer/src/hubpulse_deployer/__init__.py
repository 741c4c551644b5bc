"""hubpulse deployer service: one-click deployments to HF Spaces, AWS Lambda, Kubernetes and local."""
