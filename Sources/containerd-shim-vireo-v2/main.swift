import ContainerdShim

ShimMain.main(CommandLine.arguments)
