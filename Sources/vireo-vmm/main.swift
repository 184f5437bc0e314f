import VMM
import VMMRun

Timeline.markProcessStart()
VMMMain.run()
