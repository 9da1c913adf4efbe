// Loading the handler named by _HANDLER (AWS's Node client: src/UserFunction.js).
//
// "[dir/]file.export[.nested...]": the part of the last path segment before its first dot
// is the module, the rest the property path. The module is tried as the extensionless
// file, then `.js` (require, or import() when the nearest package.json says
// "type": "module"), `.mjs` (import()), `.cjs` (require), and finally require.resolve
// from the task root. Errors: Runtime.MalformedHandlerName, Runtime.ImportModuleError
// (MODULE_NOT_FOUND), Runtime.UserCodeSyntaxError, Runtime.HandlerNotFound.

import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  HandlerNotFound,
  ImportModuleError,
  MalformedHandlerName,
  UserCodeSyntaxError,
} from './errors.mjs';

const FUNCTION_EXPR = /^([^.]*)\.(.*)$/;

function moduleRootAndHandler(fullHandler) {
  const handler = path.basename(fullHandler);
  return [fullHandler.substring(0, fullHandler.indexOf(handler)), handler];
}

function splitHandlerString(handler) {
  const match = handler.match(FUNCTION_EXPR);
  if (!match || match.length !== 3) {
    throw new MalformedHandlerName('Bad handler');
  }
  return [match[1], match[2]];
}

function resolveHandler(object, nestedProperty) {
  return nestedProperty.split('.').reduce((nested, key) => nested && nested[key], object);
}

function hasFolderPackageJsonTypeModule(folder) {
  if (folder.endsWith('/node_modules')) {
    return false;
  }
  const manifest = path.join(folder, '/package.json');
  if (fs.existsSync(manifest)) {
    try {
      const pkg = JSON.parse(fs.readFileSync(manifest));
      if (pkg) {
        return pkg.type === 'module';
      }
    } catch (e) {
      console.warn(
        `${manifest} cannot be read, it will be ignored for ES module detection purposes.`,
        e,
      );
      return false;
    }
  }
  if (folder === '/') {
    return false;
  }
  return hasFolderPackageJsonTypeModule(path.resolve(folder, '..'));
}

/** Loads user modules; `require` is the runtime's own (its "Require stack"). */
class ModuleLoader {
  constructor(require) {
    this.require = require;
  }

  tryRequire(file, extension = '') {
    return fs.existsSync(file + extension) ? this.require(file + extension) : undefined;
  }

  async tryImport(file, extension) {
    return fs.existsSync(file + extension)
      ? await import(pathToFileURL(file + extension).href)
      : undefined;
  }

  async load(appRoot, moduleRoot, module) {
    const lambdaStylePath = path.resolve(appRoot, moduleRoot, module);
    const extensionless = this.tryRequire(lambdaStylePath);
    if (extensionless) {
      return extensionless;
    }
    const jsPath = lambdaStylePath + '.js';
    const typeModule =
      fs.existsSync(jsPath) && hasFolderPackageJsonTypeModule(path.dirname(jsPath));
    if (!typeModule) {
      const loaded = this.tryRequire(lambdaStylePath, '.js');
      if (loaded) {
        return loaded;
      }
    }
    const loaded =
      (typeModule && (await this.tryImport(lambdaStylePath, '.js'))) ||
      (await this.tryImport(lambdaStylePath, '.mjs')) ||
      this.tryRequire(lambdaStylePath, '.cjs');
    if (loaded) {
      return loaded;
    }
    return this.require(this.require.resolve(module, { paths: [appRoot, moduleRoot] }));
  }
}

async function loadUserApp(require, appRoot, moduleRoot, module) {
  try {
    return await new ModuleLoader(require).load(appRoot, moduleRoot, module);
  } catch (e) {
    if (e instanceof SyntaxError) {
      throw new UserCodeSyntaxError(e);
    } else if (e.code !== undefined && e.code === 'MODULE_NOT_FOUND') {
      throw new ImportModuleError(e);
    }
    throw e;
  }
}

/** The handler function, or one of the Runtime.* errors above. */
export async function loadHandler(require, appRoot, fullHandler) {
  if (fullHandler.includes('..')) {
    throw new MalformedHandlerName(
      `'${fullHandler}' is not a valid handler name. Use absolute paths when specifying root directories in handler names.`,
    );
  }
  const [moduleRoot, moduleAndHandler] = moduleRootAndHandler(fullHandler);
  const [module, handlerPath] = splitHandlerString(moduleAndHandler);
  const userApp = await loadUserApp(require, appRoot, moduleRoot, module);
  const handlerFunc = resolveHandler(userApp, handlerPath);
  if (!handlerFunc) {
    throw new HandlerNotFound(`${fullHandler} is undefined or not exported`);
  }
  if (typeof handlerFunc !== 'function') {
    throw new HandlerNotFound(`${fullHandler} is not a function`);
  }
  return handlerFunc;
}
