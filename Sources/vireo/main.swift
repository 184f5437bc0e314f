import VireoCLI
