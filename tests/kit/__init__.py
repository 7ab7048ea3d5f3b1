"""The project's own web kit: real nginx + php-fpm per fake host and a keep-alive HTTP load.

Only atomicdeploy's tests, benchmarks and demo use it, so it is not shipped: `load` reads the
example app's own "version N (email vN)" page, and `web` assumes Debian's nginx and php8.2-fpm.
The sshd hosts that users need too are `atomicdeploy.testing`.
"""
