"""The CLI's command groups, one module each. Thin: parse options, call one library function,
print through `progbench.commands.output` and `progbench.commands.render`."""
