"""The baseline name grammar in one line, for help texts: the CLI shows it without loading the
spec classes (pydantic, numpy) of :mod:`rksearch.arch.baselines`, which parses the names."""

NAMES_HELP = "densenet121|161|169|201, densenet[-b|-c|-bc]-L[-kK] (e.g. densenet-bc-100), cliquenet[-tT-kK][-abc]"
