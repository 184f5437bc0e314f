import VireoCLI

VireoCommand.runMain()
