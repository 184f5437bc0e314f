import VMM
import VMMCommand

Timeline.markProcessStart()
VMMRootCommand.runMain()
