"""TensorBoard plugin "lrp", installed as ``lrp_lightning.tb_plugin``.

TensorBoard finds the plugin through the ``tensorboard_plugins`` entry point, which names
:class:`lrp_lightning.tb_plugin.loader.LRPPluginLoader`. The loader module imports only TensorBoard's
``base_plugin``; the plugin (:mod:`.plugin`), its data layer (:mod:`.data`) and everything heavy
(NumPy, PyArrow, Pillow) are imported when TensorBoard loads the plugin, inside a guard, so a broken
installation disables the tab instead of stopping TensorBoard.

Modules
-------
loader      entry point: ``LRPPluginLoader``
plugin      ``LRPPlugin``: thin WSGI routes that validate their arguments
discovery   ``RunIndex``: runs below the logdir, scanned in a background thread
data        ``PluginData``: cached reads through ``RunStore``, PNG rendering, binary encoding
_data_*     its parts, re-exported by ``data``: ``_data_common`` (limits, errors, binary columns),
            ``_data_images``, ``_data_analysis``, ``_data_findings`` (``PluginData`` mixins)
static/     the frontend: ES modules (``index.js`` and its imports; the shell ``app.js``, one module per
            view in ``views/``, listed in ``views/index.js``), ``style.css``, ``index.html``
"""
