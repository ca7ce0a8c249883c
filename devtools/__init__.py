"""Development tooling: benchmarks, the soak, the process fleet and the load test.

Never imported by the shipped packages (``mintsite``, ``generation``, ``chain``) and left out of
the wheel; settings add it to INSTALLED_APPS only where it is importable (a checkout), so its
management commands (``bench_render``, ``bench_listener``, ``bench_publish``, ``bench_load``,
``soak``) exist in development and not in a deployed product.
"""
