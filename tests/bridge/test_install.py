"""Install Backend's steps (pure logic and tiny real subprocesses; no bpy, no network): the plan's
commands, the environment's fallback chain, optional steps, Windows' console windows and path
limit, and the interpreter of a venv or a conda environment."""
from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest

from emotalk3d_addon.bridge import install, install_plan, worker_client
from emotalk3d_addon.bridge.worker_client import env_python, venv_python


def _py(code: str) -> tuple[str, ...]:
    return (sys.executable, "-c", code)


def _previous_backend(tmp_path: Path) -> Path:
    env = tmp_path / "backend-env"
    env.mkdir()
    (env / "marker").write_text("previous")
    return env


def _make_build(env: Path) -> tuple[str, ...]:
    return _py(f"import pathlib; p = pathlib.Path({str(install.staging_dir(env))!r}); p.mkdir(exist_ok=True); "
               "(p / 'marker').write_text('new')")


def test_install_commands_follow_the_plan(tmp_path):
    plan = install_plan.plan_for("linux_x86_64", True)
    env = tmp_path / "env"
    build = install.staging_dir(env)
    py = str(venv_python(build))
    steps = install.install_commands("/blender/python3.11", env, plan)
    create = steps[0]
    assert isinstance(create, install.Step) and not create.optional
    assert [list(map(list, alt)) for alt in create.alternatives] == [
        [["/blender/python3.11", "-m", "venv", "--clear", str(build)]],
        [["/blender/python3.11", "-m", "virtualenv", "--clear", str(build)]],
        [["/blender/python3.11", "-m", "venv", "--clear", "--without-pip", str(build)],
         [py, "-m", "ensurepip", "--upgrade", "--default-pip"]]]
    assert steps[1] == [py, "-m", "pip", "install", "--disable-pip-version-check", "--upgrade", "pip"]
    assert steps[2:4] == [[py, *c] for c in plan.commands]
    gsplat = steps[4]
    assert len(steps) == 5 and isinstance(gsplat, install.Step) and gsplat.optional
    assert gsplat.alternatives == (((py, *plan.optional_commands[0]),),)
    cpu = install.install_commands("/blender/python3.11", env, install_plan.plan_for("win_amd64", False))
    assert len(cpu) == 4 and not any(isinstance(s, install.Step) and s.optional for s in cpu)


def test_install_commands_default_to_this_machines_plan(tmp_path, monkeypatch):
    plan = install_plan.plan_for("win_amd64", True)
    monkeypatch.setattr(install, "plan_for_this_machine", lambda: plan)
    steps = install.install_commands("/b/python", tmp_path / "env")
    assert steps[-1][-1] == "triton-windows==3.6.0.post26"


def test_environment_creation_falls_back_down_the_chain(tmp_path):
    """venv fails, virtualenv is not there: venv without pip, then ensurepip, makes it."""
    env = _previous_backend(tmp_path)
    tried = tmp_path / "tried.txt"
    note = lambda what, code: _py(f"open({str(tried)!r}, 'a').write({what!r} + ' '); raise SystemExit({code})")
    create = install.Step(((note("venv", 1),), (note("virtualenv", 1),),
                           (note("without-pip", 0), _make_build(env), note("ensurepip", 0))), failure="no env")
    assert install.run_install([create, _py("print('Successfully installed torch')")], tmp_path / "log", env)
    assert tried.read_text().split() == ["venv", "virtualenv", "without-pip", "ensurepip"]
    assert (env / "marker").read_text() == "new" and install.STATUS["ok"] is True
    assert "trying the next way" in (tmp_path / "log").read_text()


def test_the_first_way_that_works_is_the_only_one_run(tmp_path):
    env = _previous_backend(tmp_path)
    create = install.Step(((_make_build(env),), (_py("raise SystemExit('must not run')"),)))
    assert install.run_install([create], tmp_path / "log", env)
    assert "must not run" not in (tmp_path / "log").read_text()


def test_an_environment_that_cannot_be_created_is_a_clear_error(tmp_path):
    env = _previous_backend(tmp_path)
    create = install.create_env_step(str(tmp_path / "no-such-python"), env)
    assert not install.run_install([create, _py("pass")], tmp_path / "log", env)
    message = install.STATUS["message"]
    assert "step 1" in message and "could not create a virtual environment" in message
    assert "venv, virtualenv and venv without pip + ensurepip all failed" in message
    assert (env / "marker").read_text() == "previous" and not install.staging_dir(env).exists()


def test_an_optional_step_may_fail_without_failing_the_install(tmp_path):
    env = _previous_backend(tmp_path)
    gsplat = install.Step(((_py("raise SystemExit(1)"),),), optional=True)
    assert install.run_install([_make_build(env), gsplat, _py("pass")], tmp_path / "log", env)
    assert (env / "marker").read_text() == "new"
    assert install.STATUS["ok"] is True and "optional step 2 failed" in install.STATUS["message"]


def test_a_required_step_after_an_optional_one_still_counts(tmp_path):
    env = _previous_backend(tmp_path)
    gsplat = install.Step(((_py("pass"),),), optional=True)
    assert not install.run_install([_make_build(env), gsplat, _py("raise SystemExit(4)")], tmp_path / "log", env)
    assert "step 3 (exit 4)" in install.STATUS["message"] and (env / "marker").read_text() == "previous"


def test_every_step_opens_no_console_window_on_windows(tmp_path, monkeypatch):
    seen = []
    real_popen = subprocess.Popen

    def popen(cmd, **kwargs):
        seen.append(kwargs.get("creationflags"))
        kwargs.pop("creationflags", None)           # this is not Windows: run it without
        return real_popen(cmd, **kwargs)

    monkeypatch.setattr(install.subprocess, "Popen", popen)
    monkeypatch.setattr(install_plan.sys, "platform", "win32")
    env = _previous_backend(tmp_path)
    assert install.run_install([_make_build(env), install.Step(((_py("pass"),),), optional=True)],
                               tmp_path / "log", env)
    assert seen == [subprocess.CREATE_NO_WINDOW if hasattr(subprocess, "CREATE_NO_WINDOW") else 0x08000000] * 2
    monkeypatch.setattr(install_plan.sys, "platform", "linux")
    seen.clear()
    assert install.run_install([_make_build(env)], tmp_path / "log", env)
    assert seen == [None]


# --------------------------------------------------------------------------- Windows' path limit


def test_a_deep_folder_without_long_paths_is_refused_before_installing():
    deep = "C:\\Users\\" + "a" * 60 + "\\AppData\\Roaming\\Blender Foundation\\Blender\\4.2\\extensions\\.user\\" \
           "user_default\\emotalk3d\\backend-env"
    assert len(deep) + len(".new") + install.DEEPEST_FILE_CHARS >= install.MAX_PATH
    problem = install.long_path_problem(deep, "win32", long_paths_enabled=lambda: False)
    assert problem and "260-character" in problem and "LongPathsEnabled" in problem and "backend-env.new" in problem
    assert install.long_path_problem(deep, "win32", long_paths_enabled=lambda: True) is None
    assert install.long_path_problem(deep, "linux", long_paths_enabled=lambda: False) is None


def test_a_short_folder_needs_no_long_paths():
    asked = []
    short = "C:\\b\\backend-env"
    assert install.long_path_problem(short, "win32", long_paths_enabled=lambda: asked.append(1) or False) is None
    assert asked == []                                     # the registry is only read when it matters
    # the boundary: the deepest file is the environment's path + DEEPEST_FILE_CHARS
    limit = install.MAX_PATH - install.DEEPEST_FILE_CHARS - len(".new")
    assert install.long_path_problem("C:\\" + "x" * (limit - 4), "win32", lambda: False) is None
    assert install.long_path_problem("C:\\" + "x" * (limit - 3), "win32", lambda: False) is not None


@pytest.mark.parametrize("value, want", [(1, True), (0, False), (None, False)])
def test_the_long_paths_registry_value_is_read(monkeypatch, value, want):
    opened = []

    class Key:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def open_key(root, path):
        opened.append((root, path))
        return Key()

    def query(key, name):
        assert name == "LongPathsEnabled"
        if value is None:
            raise FileNotFoundError(name)
        return value, 4

    fake = types.SimpleNamespace(HKEY_LOCAL_MACHINE="HKLM", OpenKey=open_key, QueryValueEx=query)
    monkeypatch.setitem(sys.modules, "winreg", fake)
    assert install.windows_long_paths_enabled() is want
    assert opened == [("HKLM", r"SYSTEM\CurrentControlSet\Control\FileSystem")]


def test_without_a_registry_long_paths_count_as_off(monkeypatch):
    monkeypatch.setitem(sys.modules, "winreg", None)           # import fails, as off Windows
    assert install.windows_long_paths_enabled() is False


# --------------------------------------------------------------------------- interpreter of an environment


def test_a_conda_environment_on_windows_has_python_exe_at_its_root(tmp_path):
    conda = tmp_path / "conda-env"
    conda.mkdir()
    (conda / "python.exe").write_text("")
    assert env_python(conda, "win32") == conda / "python.exe"
    venv = tmp_path / "venv"
    (venv / "Scripts").mkdir(parents=True)
    (venv / "Scripts" / "python.exe").write_text("")
    (venv / "python.exe").write_text("")                        # a venv's Scripts one comes first
    assert env_python(venv, "win32") == venv / "Scripts" / "python.exe"
    assert env_python(tmp_path / "empty", "win32") == tmp_path / "empty" / "Scripts" / "python.exe"


def test_posix_environments_have_bin_python_or_python3(tmp_path):
    (tmp_path / "a" / "bin").mkdir(parents=True)
    (tmp_path / "a" / "bin" / "python3").write_text("")
    assert env_python(tmp_path / "a", "linux") == tmp_path / "a" / "bin" / "python3"
    (tmp_path / "a" / "bin" / "python").write_text("")
    assert env_python(tmp_path / "a", "darwin") == tmp_path / "a" / "bin" / "python"


def test_the_backend_python_preference_may_name_a_conda_environment(tmp_path, monkeypatch):
    monkeypatch.setattr(worker_client.sys, "platform", "win32")
    conda = tmp_path / "conda-env"
    conda.mkdir()
    (conda / "python.exe").write_text("")
    assert worker_client.resolve_python(str(conda)) == str(conda / "python.exe")
    with pytest.raises(worker_client.WorkerError, match="does not exist"):
        worker_client.resolve_python(str(tmp_path / "nothing-here"))
