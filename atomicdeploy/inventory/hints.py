"""What Deployer and Capistrano users write, and what it is called here.

A spelling hint alone misleads: Deployer 6's `user` (the SSH user) is closest in spelling
to `http_user` (the web server's user). These hints go by meaning.
"""

from __future__ import annotations

_SSH_CONFIG = " (use ssh_config: an OpenSSH config file holds every SSH option)"
_NOT_NEEDED = " (not needed here: the release is exported with git archive on this machine)"

MEANT: dict[str, str] = {
    "user": " (did you mean 'remote_user'? Deployer 6's `user` is the SSH user)",
    "ssh_user": " (did you mean 'remote_user'?)",
    "become": " (atomicdeploy runs every command as the SSH user: set remote_user)",
    "host": " (did you mean 'hostname'?)",
    "alias": " (the host's name is its key under hosts:; `hostname` is its address)",
    "stage": " (use labels: {stage: prod})",
    "stages": " (use labels: {stage: prod} on each host)",
    "config_file": " (did you mean 'ssh_config'?)",
    "ssh_arguments": _SSH_CONFIG,
    "ssh_multiplexing": _SSH_CONFIG,
    "ssh_options": _SSH_CONFIG,
    "update_code_strategy": _NOT_NEEDED,
    "git_tty": _NOT_NEEDED,
    "git_ssh_command": _NOT_NEEDED,
    "git_recursive": _NOT_NEEDED,
    "release_name": " (release names are made here: a UTC time, the same on every host)",
    "allow_anonymous_stats": " (nothing to turn off: atomicdeploy sends no statistics)",
    "default_stage": " (name the stage on the command line: fab prod deploy)",
    "linked_files": " (did you mean 'shared_files'? Capistrano's linked_files)",
    "linked_dirs": " (did you mean 'shared_dirs'? Capistrano's linked_dirs)",
    "deploy_to": " (did you mean 'deploy_path'? Capistrano's deploy_to)",
    "repo_url": " (did you mean 'repository'? Capistrano's repo_url)",
    "writable_chmod_recursive": " (did you mean 'writable_recursive'?)",
    "clear_paths": " (use exclude: to leave paths out of the upload)",
}

TOP_LEVEL_HINTS: dict[str, str] = {
    "import": "; for `import: recipe/laravel.php` write `recipes: [laravel]` under config:,"
    " or convert the file: atomicdeploy from-deployer deploy.yaml",
    "tasks": "; shell commands go under config: hooks: {after_switch: [...]}",
    "after": "; use config: hooks: {after_<step>: [...]}",
    "before": "; use config: hooks: {before_<step>: [...]}",
    "fail": "; use config: hooks: {on_failure: [...]}",
}
