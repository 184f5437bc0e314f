import VMM
import VireoCLI

Timeline.markProcessStart()
VireoCommand.runMain()
