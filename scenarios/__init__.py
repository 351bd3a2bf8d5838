"""The benchmarks (stream families: ``permuted``, ``rotated``, ``split``), each registered as
a :class:`clbench.benchmark.Benchmark`, and the scenario taxonomy (GG, GNs, GNu, NNs) in
``taxonomy``. The folder keeps the name the project is known by; in clbench's vocabulary a
"benchmark" is a stream family and a "scenario" is what a method sees of task identity."""
