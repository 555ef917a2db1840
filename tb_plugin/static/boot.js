// Starts the LRP tab when index.html is opened directly (outside TensorBoard's iframe).
import { render } from "./index.js";

render();
