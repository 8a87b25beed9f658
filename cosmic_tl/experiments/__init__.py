"""The paper's robustness experiments, composed from the method modules."""
