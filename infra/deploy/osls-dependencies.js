'use strict';

// Puts each function's Python dependencies into its zip (infra/deploy/dependencies.py): `base` always, and the
// groups the function lists in serverless.yml (`dependencies: [stripe]`). The local stage gets none: the local stack
// runs this checkout's .venv, so it packages without pip in a second. The Python is $PYTHON, else this checkout's
// .venv, else python3.
const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');

class NotifyDependencies {
  constructor(serverless, options) {
    this.serverless = serverless;
    this.options = options || {};
    serverless.configSchemaHandler.defineFunctionProperties('aws', {
      properties: { dependencies: { type: 'array', items: { type: 'string' } } },
    });
    this.hooks = {
      'before:package:createDeploymentArtifacts': () => this.run(['build']),
      'after:package:createDeploymentArtifacts': () => this.inject(),
    };
  }

  skipped() {
    const stage = this.options.stage || this.serverless.service.provider.stage;
    return stage === 'local';
  }

  run(args) {
    if (this.skipped()) return;
    const root = this.serverless.serviceDir;
    const venv = path.join(root, '.venv', 'bin', 'python');
    const python = process.env.PYTHON || (fs.existsSync(venv) ? venv : 'python3');
    const done = spawnSync(python, ['-m', 'infra.deploy.dependencies', ...args], { cwd: root, stdio: 'inherit' });
    if (done.status !== 0) {
      const reason = done.error ? `: ${done.error.message}` : '';
      throw new Error(`python -m infra.deploy.dependencies ${args[0]} failed (exit ${done.status}${reason})`);
    }
  }

  inject() {
    const service = this.serverless.service;
    const artifacts = {};
    for (const name of service.getAllFunctions()) {
      const fn = service.getFunction(name);
      if (fn.image || !fn.package || !fn.package.artifact) continue;
      artifacts[path.resolve(this.serverless.serviceDir, fn.package.artifact)] = fn.dependencies || [];
    }
    this.run(['inject', JSON.stringify(artifacts)]);
  }
}

module.exports = NotifyDependencies;
